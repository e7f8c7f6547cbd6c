"""The dashboard: a web UI to find, read and operate executions (``durable dashboard``),
and the ASGI app behind it, to mount in your own app (``create_app``).

It needs the ``dashboard`` extra (Starlette, Jinja2, uvicorn): ``pip install
'durable-engine[dashboard]'``. Every asset it serves ships in the package.
"""

from durable.dashboard.app import create_app

__all__ = ["create_app"]
