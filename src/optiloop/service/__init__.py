"""The REST service: SigOpt's v1 API over optiloop's store, with tokens.

``create_app(db_url)`` builds the FastAPI application; ``optiloop serve``
runs it with uvicorn.  Code written for the official ``sigopt`` client works
against it once the client's API URL points here.
"""

from optiloop.service.app import MAX_BODY_BYTES, create_app

__all__ = ["MAX_BODY_BYTES", "create_app"]
