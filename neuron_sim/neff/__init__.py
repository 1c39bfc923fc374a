"""NEFF files: the real container layout, metadata, builder and inspector."""
