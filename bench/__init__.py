"""`make bench`: the catalog read path measured through Caddy (see __main__)."""
