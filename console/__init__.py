"""The officer and admin web console: an HTTP front of the gateway for people at a checkpoint.

It is a client of the gateway and nothing more: every page and API call is answered by calling the
gateway through the client layer (``facegate.gateway_client``) with the logged-in user's own API
key, so the gateway's role table, decisions, two-officer rule, image lifetime and audit trail apply
to a browser exactly as to the CLI. The console adds what a browser needs: sessions (the key stays
on the server), CSRF protection, a live referral queue (server-sent events) and static pages.
It imports only the client layer (``facegate``), never gateway or service code.
"""
