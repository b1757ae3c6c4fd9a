"""``python -m snnet_export.cli``: the same as the ``snnet-export`` console script (torchrun uses it)."""
from . import main

main()
