"""Orders and their immutable item snapshots: the status machine, the shopper and admin APIs."""
