"""Inbound alerts: receivers for monitoring tools, rules that turn alerts into draft incidents.

``verify`` proves the sender (each tool's own way), ``signals`` reads each tool's payload into
one shape, ``rules`` picks the rule and fills its templates, ``drafts`` groups alerts into one
draft per alert group and publishes through ``service.submit`` / ``service.add_update``.
"""
