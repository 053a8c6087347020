"""Prefect flows that orchestrate relations_etl; the only place Prefect is imported."""
