"""Model releases: the challenger, its promotion or retirement on fresh labelled rows,
rollbacks, and the ledger of every move."""
