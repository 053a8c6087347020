"""Build the shipped code crosswalk and COW organizations from the public lists (run by hand).

    PYTHONPATH=src python warehouse/reference/build.py /path/to/reference-sources

reads `cow-states.csv`, `gw-states.csv` and `cow-igos.csv` (see README.md for their citations)
and writes `country_codes.csv` and `organizations_cow.csv` beside this file. The outputs are
committed; nothing reads the sources at run time. ISO 3166 codes come from pycountry (LGPL,
used unmodified); no GPL table (countrycode, country_converter) is used.
"""

from __future__ import annotations

import csv
import datetime as dt
import itertools
import re
import shutil
import sys
import tempfile
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import pycountry

from relations_etl.reference import Reference
from relations_etl.settings import Settings
from relations_etl.text import key

HERE = Path(__file__).resolve().parent
Spell = tuple[str, str, str, str]  # code, valid_from, valid_to, note

# Codes whose meaning changes with the date, or that a name lookup cannot give: by number.
# Shared by COW and G&W where both lists use the number for the same state.
_SHARED: dict[str, list[Spell]] = {
    "240": [("XHN", "", "", "Hanover")],
    "245": [("XBV", "", "", "Bavaria")],
    "265": [("DDR", "", "", "German Democratic Republic")],
    "267": [("XBD", "", "", "Baden")],
    "269": [("XSX", "", "", "Saxony")],
    "271": [("XWT", "", "", "Wuerttemberg")],
    "273": [("XHK", "", "", "Hesse-Kassel (Electoral)")],
    "275": [("XHD", "", "", "Hesse-Darmstadt (Grand Ducal)")],
    "280": [("XMS", "", "", "Mecklenburg-Schwerin")],
    "300": [("XAH", "", "", "Austria-Hungary (the Habsburg monarchy)")],
    "325": [("ITA", "", "", "Italy; Sardinia before 1861, one state by the lists' continuity")],
    "327": [("XPS", "", "", "Papal States")],
    "329": [("XTS", "", "", "Two Sicilies")],
    "332": [("XMO", "", "", "Modena")],
    "335": [("XPM", "", "", "Parma")],
    "337": [("XTU", "", "", "Tuscany")],
    "365": [
        ("RUS", "", "1922-12-29", "the Russian Empire and Soviet Russia before the USSR"),
        ("SUN", "1922-12-30", "1991-12-25", "the Soviet Union"),
        ("RUS", "1991-12-26", "", "the Russian Federation"),
    ],
    "490": [("COD", "", "", "DR Congo (Zaire 1971-1997, same state)")],
    "511": [("XUG", "", "", "Zanzibar")],
    "552": [
        ("RHO", "", "1980-04-17", "Rhodesia (UDI 1965), before independence as Zimbabwe"),
        ("ZWE", "1980-04-18", "", "Zimbabwe"),
    ],
    "678": [("YEM", "", "", "Yemen Arab Republic (North Yemen), continued by the Republic")],
    "680": [("YMD", "", "", "People's Democratic Republic of Yemen (South Yemen)")],
    "713": [("TWN", "", "", "Taiwan (the Republic of China after 1949)")],
    "730": [("XKO", "", "", "Korea (Joseon / Korean Empire)")],
    "731": [("PRK", "", "", "North Korea")],
    "732": [("KOR", "", "", "South Korea")],
    "775": [("MMR", "", "", "Myanmar (Burma, same state)")],
    "816": [
        ("VDR", "", "1976-07-01", "the Democratic Republic of Vietnam (North Vietnam)"),
        ("VNM", "1976-07-02", "", "the Socialist Republic of Viet Nam, which continues it"),
    ],
    "817": [("XSV", "", "", "the Republic of Vietnam (South Vietnam)")],
}
_COW: dict[str, list[Spell]] = {
    "255": [
        ("DEU", "", "1945-05-08", "Prussia, then Germany (COW: one state to 1945)"),
        ("DEU", "1990-10-03", "", "united Germany (COW: 260 and 265 in between)"),
    ],
    "260": [("DEU", "", "", "the Federal Republic of Germany, continued by Germany")],
    "345": [
        ("SRB", "", "1918-11-30", "Serbia (COW: 345 from 1878)"),
        ("YUG", "1918-12-01", "1992-04-26", "the Kingdom, then Socialist Federal Republic"),
        (
            "SCG",
            "1992-04-27",
            "2006-06-02",
            "the Federal Republic of Yugoslavia / Serbia and Montenegro",
        ),
        ("SRB", "2006-06-03", "", "Serbia (COW keeps 345)"),
    ],
}
_GW: dict[str, list[Spell]] = {
    "89": [("XCA", "", "", "United Provinces of Central America")],
    "99": [("XGC", "", "", "Great Colombia")],
    "255": [("DEU", "", "1945-05-07", "Germany (Prussia), G&W's dates")],
    "260": [("DEU", "", "", "the Federal Republic from 1949, and Germany after 1990 (G&W)")],
    "340": [("SRB", "", "", "Serbia (1878-1915 and from 2006)")],
    "341": [("MNE", "", "", "Montenegro (1868-1915 and from 2006)")],
    "345": [
        ("YUG", "", "1992-04-26", "the Kingdom, then Socialist Federal Republic"),
        (
            "SCG",
            "1992-04-27",
            "",
            "the Federal Republic of Yugoslavia / Serbia and Montenegro "
            "(G&W end 2006-06-04; Serbia is 340 after)",
        ),
    ],
    "396": [("XAB", "", "", "Abkhazia")],
    "397": [("XSO", "", "", "South Ossetia")],
    "563": [("XTV", "", "", "Transvaal")],
    "564": [("XOF", "", "", "Orange Free State")],
    "711": [("XTB", "", "", "Tibet")],
    "815": [("XAN", "", "", "Vietnam (Annam), before French rule")],
}
# list names a plain lookup does not resolve (or resolves to a label not meant here)
_NAMES = {
    "Congo": "COG",  # the list's 484 is Brazzaville (490 is the DR Congo)
    "Antigua & Barbuda": "ATG",
    "Surinam": "SUR",
    "Samoa/Western Samoa": "WSM",
    "Tanzania/Tanganyika": "TZA",
}
# ISO 3166 alpha-2 and numeric codes of former states and reused codes, with dates
_ISO2: dict[str, list[Spell]] = {
    "AI": [
        ("AFI", "", "1977-06-26", "French Afars and Issas (Djibouti from 1977-06-27)"),
        ("AIA", "1977-06-27", "", "Anguilla"),
    ],
    "BQ": [
        ("ATB", "", "1979-12-31", "British Antarctic Territory (merged into AQ 1979)"),
        ("BES", "2010-12-15", "", "Bonaire, Sint Eustatius and Saba"),
    ],
    "BU": [("MMR", "", "", "Burma, same state as Myanmar")],
    "CS": [
        ("CSK", "", "1992-12-31", "Czechoslovakia"),
        ("SCG", "2003-07-23", "", "Serbia and Montenegro (CS assigned 2003-07-23)"),
    ],
    "DD": [("DDR", "", "", "German Democratic Republic")],
    "DY": [("BEN", "", "", "Dahomey, same state as Benin")],
    "GE": [
        ("GEL", "", "1979-07-11", "Gilbert and Ellice Islands"),
        ("GEO", "1979-07-12", "", "Georgia"),
    ],
    "HV": [("BFA", "", "", "Upper Volta, same state as Burkina Faso")],
    "RH": [("RHO", "", "", "Southern Rhodesia")],
    "SK": [
        ("SKM", "", "1975-05-16", "Sikkim (part of India from 1975-05-16)"),
        ("SVK", "1975-05-17", "", "Slovakia"),
    ],
    "SU": [("SUN", "", "", "the Soviet Union")],
    "TP": [("TLS", "", "", "East Timor, the state is Timor-Leste")],
    "VD": [("VDR", "", "", "North Vietnam")],
    "XK": [("XKX", "", "", "Kosovo (user-assigned, in wide use)")],
    "YD": [("YMD", "", "", "South Yemen")],
    "YU": [
        ("YUG", "", "1992-04-26", "Yugoslavia"),
        ("SCG", "1992-04-27", "2003-07-22", "ISO kept YU for the Federal Republic until 2003"),
    ],
    "ZR": [("COD", "", "", "Zaire, same state as the DR Congo")],
}
_NUMERIC: dict[str, list[Spell]] = {
    "104": [("MMR", "", "", "Myanmar (Burma)")],
    "180": [("COD", "", "", "DR Congo (Zaire)")],
    "200": [("CSK", "", "", "Czechoslovakia")],
    "204": [("BEN", "", "", "Benin (Dahomey)")],
    # codes ISO replaced keep their one meaning on every date (lists backdate the new ones)
    "230": [("ETH", "", "", "Ethiopia before Eritrea's independence (now 231)")],
    "278": [("DDR", "", "", "German Democratic Republic")],
    "280": [("DEU", "", "", "Federal Republic of Germany before 1990 (now 276)")],
    "626": [
        ("TMP", "", "2002-05-19", "East Timor, the territory"),
        ("TLS", "2002-05-20", "", "Timor-Leste"),
    ],
    "704": [("VNM", "1976-07-02", "", "Viet Nam; before reunification the code is ambiguous")],
    "716": [
        ("RHO", "", "1980-04-17", "Southern Rhodesia"),
        ("ZWE", "1980-04-18", "", "Zimbabwe"),
    ],
    "720": [("YMD", "", "", "South Yemen")],
    "736": [("SDN", "", "", "Sudan before South Sudan's independence (now 729)")],
    "810": [("SUN", "", "", "the Soviet Union")],
    "854": [("BFA", "", "", "Burkina Faso (Upper Volta)")],
    "886": [("YEM", "", "", "Yemen Arab Republic (North Yemen), continued by the Republic")],
    "890": [("YUG", "", "", "Socialist Federal Republic of Yugoslavia (UN M49 code)")],
    "891": [
        ("YUG", "", "1992-04-26", "Yugoslavia"),
        ("SCG", "1992-04-27", "", "the Federal Republic of Yugoslavia / Serbia and Montenegro"),
    ],
}


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _state_codes(
    rows: list[dict[str, str]],
    number: str,
    letter: str,
    special: dict[str, list[Spell]],
    ref: Reference,
    system: str,
    same: dict[str, tuple[str, list[Spell]]] | None = None,
) -> tuple[dict[str, list[Spell]], dict[str, str]]:
    """Spells per number, and the number of every letter code, from one state list; `same`:
    another list's letter code and spells per number, used where this list gives a number no
    special meaning and the same letter code."""
    spells: dict[str, list[Spell]] = {}
    letters: dict[str, str] = {}
    for row in rows:
        code, name = row[number], row["country_name"]
        letters.setdefault(row[letter], code)
        if code in spells:
            continue
        if code in special:
            spells[code] = special[code]
            continue
        if same and same.get(code, ("", []))[0] == row[letter]:
            spells[code] = same[code][1]
            continue
        # the name as the list used it, on the day its spell began ("Yemen" in 1990)
        day = dt.date.fromisoformat(row["start"])
        found = _NAMES.get(name) or ref.resolve_country(name, day).code
        if found is None:
            raise SystemExit(f"{system} {code} {name!r}: no project code; add it to the tables")
        spells[code] = [(found, "", "", name)]
    return spells, letters


def _crosswalk(sources: Path, ref: Reference) -> list[dict[str, str]]:
    cow_rows = _rows(sources / "cow-states.csv")
    gw_rows = _rows(sources / "gw-states.csv")
    cow, cow_letters = _state_codes(cow_rows, "cowcode", "cowc", {**_SHARED, **_COW}, ref, "COW")
    # G&W numbers mean what COW's do unless listed in _GW (COW-only specials are not inherited)
    letter_of = {number: letter for letter, number in cow_letters.items()}
    common = {n: (letter_of[n], s) for n, s in cow.items() if n not in _COW}
    gw, _ = _state_codes(gw_rows, "gwcode", "gwc", {**_SHARED, **_GW}, ref, "G&W", common)
    out: list[dict[str, str]] = []

    def emit(system: str, value: str, spells: Iterable[Spell]) -> None:
        for code, start, end, note in spells:
            out.append(
                {
                    "system": system,
                    "value": value,
                    "code": code,
                    "valid_from": start,
                    "valid_to": end,
                    "note": note,
                }
            )

    for number, spells in sorted(cow.items(), key=lambda kv: int(kv[0])):
        emit("cow", number, spells)
    for letter, number in sorted(cow_letters.items()):
        emit("cow-letter", letter, cow[number])
    for number, spells in sorted(gw.items(), key=lambda kv: int(kv[0])):
        emit("gw", number, spells)
    iso2: dict[str, list[Spell]] = {}
    numeric: dict[str, list[Spell]] = {}
    for c in pycountry.countries:
        iso2[c.alpha_2] = [(c.alpha_3, "", "", c.name)]
        numeric[str(int(c.numeric))] = [(c.alpha_3, "", "", c.name)]
    for h in pycountry.historic_countries:
        code = getattr(h, "alpha_3", None)
        if code and h.alpha_2 not in iso2 and h.alpha_2 not in _ISO2:
            iso2[h.alpha_2] = [(code, "", "", h.name)]
        number = getattr(h, "numeric", None)
        if code and number and str(int(number)) not in numeric:
            numeric[str(int(number))] = [(code, "", "", h.name)]
    iso2.update(_ISO2)
    numeric.update(_NUMERIC)
    for value, spells in sorted(iso2.items()):
        emit("iso2", value, spells)
    for value, spells in sorted(numeric.items(), key=lambda kv: int(kv[0])):
        emit("iso-numeric", value, spells)
    for row in out:
        if row["code"] not in ref.countries:
            raise SystemExit(f"{row}: {row['code']} is not a project country code")
    return out


# full names for the IGOs whose COW names are the most abbreviated; others are expanded below
_FULL = {
    "FAO": "Food and Agriculture Organization of the United Nations",
    "GATT": "General Agreement on Tariffs and Trade",
    "IBRD": "International Bank for Reconstruction and Development (World Bank)",
    "ICAO": "International Civil Aviation Organization",
    "ILO": "International Labour Organization",
    "IMO": "International Maritime Organization",
    "ITU": "International Telecommunication Union",
    "LoN": "League of Nations",
    "OAU": "Organization of African Unity",
    "OECD": "Organisation for Economic Co-operation and Development",
    "OEEC": "Organisation for European Economic Co-operation",
    "UNIDO": "United Nations Industrial Development Organization",
    "UPU": "Universal Postal Union",
    "WIPO": "World Intellectual Property Organization",
    "WMO": "World Meteorological Organization",
    "WCO": "World Customs Organization",
    "WTOURO": "World Tourism Organization",
    "WPact": "Warsaw Treaty Organization (Warsaw Pact)",
    "CMEA": "Council for Mutual Economic Assistance (Comecon)",
    "IFAD": "International Fund for Agricultural Development",
    "INTERPOL": "International Criminal Police Organization (INTERPOL)",
    "IOMig": "International Organization for Migration",
    "IHO": "International Hydrographic Organization",
    "IEA": "International Energy Agency",
    "IFC": "International Finance Corporation",
    "IsDB": "Islamic Development Bank",
    "ISDB": "Islamic Development Bank",
    "PCA": "Permanent Court of Arbitration",
    "OAPEC": "Organization of Arab Petroleum Exporting Countries",
    "NAM": "Non-Aligned Movement",
    "OECS": "Organisation of Eastern Caribbean States",
    "AsDB": "Asian Development Bank",
    "IADB": "Inter-American Development Bank",
    "EFTA": "European Free Trade Association",
    "ECSC": "European Coal and Steel Community",
    "EURATOM": "European Atomic Energy Community (Euratom)",
    "CERN": "European Organization for Nuclear Research (CERN)",
    "WEU": "Western European Union",
    "SAARC": "South Asian Association for Regional Cooperation",
    "IAEA": "International Atomic Energy Agency",
    # COW names both "Eastern Caribb. Central Bank"; ECCA (1979-1983) is its predecessor
    "ECCA": "East Caribbean Currency Authority",
    "ECCB": "Eastern Caribbean Central Bank",
}
# COW abbreviations of organizations the project already codes otherwise: the same body
_SAME = {
    "LOAS": "LAS",
    "ComSec": "COMMONWEALTH",
}
# bodies inside another organization, where the relation is plain
_PARENT = {
    "ECB": "EU",
    "EIB": "EU",
    "ETF": "EU",
    "EFILWC": "EU",
    "PAP": "AU",
    "IFC": "IBRD",
    "MIGA": "IBRD",
    "EAPC": "NATO",
    "IOcC": "UNESCO",
    "APFIC": "FAO",
    "EUFMD": "FAO",
    "ARCAL": "IAEA",
}
# whole-word abbreviations of COW's names that have one meaning
_WORDS = {
    "Intl": "International",
    "Int'l": "International",
    "Int": "International",
    "Inter'l": "International",
    "Org": "Organization",
    "Org.": "Organization",
    "Orgs.": "Organizations",
    "Assoc.": "Association",
    "Assoc": "Association",
    "Assn": "Association",
    "Dev.": "Development",
    "Develop.": "Development",
    "Devel.": "Development",
    "Dev": "Development",
    "Econ.": "Economic",
    "Econ": "Economic",
    "Afr.": "African",
    "Am": "American",
    "Cmte": "Committee",
    "Comte": "Committee",
    "Instit": "Institute",
    "Instit.": "Institute",
    "Ag": "Agriculture",
    "Ag.": "Agriculture",
    "Auth.": "Authority",
    "Coop": "Cooperation",
    "Coop.": "Cooperation",
    "Euro": "European",
    "Europ.": "European",
    "Eur.": "European",
    "Cent.": "Central",
    "Centr.": "Central",
    "Cent": "Central",
    "Centrl": "Central",
    "Caribb.": "Caribbean",
    "Telecomm.": "Telecommunications",
    "Res.": "Research",
    "Intergov.": "Intergovernmental",
    "Intgvt": "Intergovernmental",
    "Fed": "Federation",
    "Perm": "Permanent",
    "Perm.": "Permanent",
    "L/A": "Latin America",
    "Med": "Mediterranean",
    "Nav.": "Navigation",
    "Navig": "Navigation",
    "Reg.": "Regional",
    "Reg": "Regional",
    "Educ.": "Education",
    "Comp": "Company",
    "Nuc.": "Nuclear",
    "Nuke": "Nuclear",
    "Prog.": "Programme",
    "Stat": "Statistics",
    "Inter-Am": "Inter-American",
    "Inter-Af": "Inter-African",
    "Pan-Am": "Pan-American",
    "PanAm": "Pan-American",
    "Inter-St": "Inter-State",
    "Intl.": "International",
}


def _expand(name: str) -> str:
    words = [_WORDS.get(w, w) for w in re.split(r"\s+", name.strip().rstrip("Ê").strip())]
    return " ".join(words)


def _organizations(sources: Path, ref: Reference) -> list[dict[str, str]]:
    out = []
    seen: dict[str, str] = {}
    for row in _rows(sources / "cow-igos.csv"):
        code = row["ioname"].strip()
        if key(code) in seen:
            raise SystemExit(f"COW abbreviations {seen[key(code)]} and {code} fold to one key")
        seen[key(code)] = code
        cow_name = row["orgname"].strip().rstrip("Ê").strip()
        same = _SAME.get(code) or (code.upper() if code.upper() in ref.organizations else "")
        taken = ref.resolve_organization(code)
        if taken is not None and not same:
            raise SystemExit(f"COW {code} is already the project's alias of {taken}")
        out.append(
            {
                "code": code,
                "name": _FULL.get(code) or _expand(cow_name),
                "cow_name": cow_name,
                "parent": _PARENT.get(code, ""),
                "founded": row["sdate"].strip(),
                "dissolved": row["deaddate"].strip(),
                "same_as": same,
                "note": "",
            }
        )
    return out


def _write(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    print(f"{path}: {len(rows)} rows")


def main(argv: list[str]) -> None:
    """Write country_codes.csv and organizations_cow.csv from the sources folder in argv[1]."""
    sources = Path(argv[1]) if len(argv) > 1 else HERE.parents[2] / "shared" / "reference-sources"
    with tempfile.TemporaryDirectory() as home:
        # the hand-kept tables only: the outputs of an earlier build must not feed this one
        curated = Path(home) / "curated"
        curated.mkdir()
        for path in HERE.glob("*.csv"):
            if path.name not in ("country_codes.csv", "organizations_cow.csv"):
                shutil.copy(path, curated / path.name)
        ref = Reference.load(Settings(home=Path(home), reference_dir=curated))
    spells: dict[tuple[str, str], list[dict[str, str]]] = defaultdict(list)
    rows = _crosswalk(sources, ref)
    for row in rows:
        spells[(row["system"], row["value"])].append(row)
    for (system, value), group in spells.items():
        bounds = sorted((r["valid_from"] or "0000", r["valid_to"] or "9999") for r in group)
        if any(a[1] >= b[0] for a, b in itertools.pairwise(bounds)):
            raise SystemExit(f"{system} {value}: spells overlap: {group}")
    _write(HERE / "country_codes.csv", rows)
    _write(HERE / "organizations_cow.csv", _organizations(sources, ref))


if __name__ == "__main__":
    main(sys.argv)
