"""Server-rendered customer pages, one module per page area: each view parses the request, asks
`subscriptions.policy`, calls a service or selector and renders. No business rule lives here.
"""
