"""``thg-nerf serve``: live telepresence in the browser (microphone or audio file in, the person talking out).

Needs the ``serve`` extra (aiohttp), imported only here. See docs/SERVE.md for the protocol, the safety rules
and the measured latency.
"""
