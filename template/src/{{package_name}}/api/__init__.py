"""The HTTP API: the `router` of every module of this package, gathered here.

Adding routes means adding a module with a module-level `router = APIRouter(...)`,
never editing this file (a template update then has nothing of yours to merge here).
"""

import importlib
import pkgutil

from fastapi import APIRouter


def discover_routers() -> APIRouter:
    """One router holding the `router` of each module of this package, by module name."""
    api_router = APIRouter()
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda info: info.name):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        router = getattr(module, "router", None)
        if isinstance(router, APIRouter):
            api_router.include_router(router)
    return api_router


api_router = discover_routers()
