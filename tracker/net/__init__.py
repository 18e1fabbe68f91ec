"""Everything that leaves the process over HTTP: the one client, the upstream query, the
guard that keeps webhooks off private networks."""
