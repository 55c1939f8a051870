"""pytest plugin (``pytest11`` entry point): cloudrift test fixtures, named ``cloudrift_*``."""
