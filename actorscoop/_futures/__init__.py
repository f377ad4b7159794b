"""The implementation behind ``actorscoop.futures`` and ``actorscoop.shared``.

Users import those two modules; nothing here is public.
"""
