"""Traffic routers, one file per provider, behind the small protocol in `base`."""
