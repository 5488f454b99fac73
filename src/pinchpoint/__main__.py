"""``python -m pinchpoint`` runs the command line."""

from pinchpoint.cli import main

main()
