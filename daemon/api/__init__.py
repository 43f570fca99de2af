"""`webhookd api`: the management HTTP API, a Svix-compatible subset (docs/api.md).

A sibling of the delivery daemon, not a tenant of it: it shares `store`, `config`, `models`,
the query file and the endpoint admin functions, and owns its routes, auth and serialisation.
Nothing in the delivery path imports this package.
"""
