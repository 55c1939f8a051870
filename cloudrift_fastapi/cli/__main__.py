"""``python -m cloudrift_fastapi.cli``: the ``cloudrift`` command without the console script."""

from cloudrift_fastapi.cli import main

main()
