"""The operators' console (/console) and the tenants' portal (/portal): static pages that
`webhookd api` serves, whose front end (static/, vanilla JavaScript) calls the public API."""
