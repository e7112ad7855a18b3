"""`python -m inboxleads`: the same CLI as the `inboxleads` command."""

from .entry import main

if __name__ == "__main__":
    main()
