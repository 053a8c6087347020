"""Named readers for public formats, each with its built-in mapping (`<format>.yaml`)."""
