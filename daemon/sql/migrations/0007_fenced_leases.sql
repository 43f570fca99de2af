-- Fenced leases. Every claim takes a token from this sequence and stamps it on the rows it
-- leases; lease renewals, outcomes and releases apply only where the token still matches.
-- A daemon whose lease was taken over (it lost the database for longer than its lease, and
-- another daemon rescued the row) can still log its attempt, but never overwrites the new
-- holder's state; and two processes that share an instance_id (containers where every pid
-- is 1) cannot be confused, since their claims never share a token. locked_by stays, to say
-- who holds a lease.
CREATE SEQUENCE webhookd.lease_tokens;
ALTER TABLE webhookd.deliveries ADD COLUMN lease_token bigint;
