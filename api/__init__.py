"""Coinfrs read API (FastAPI): ``api.main:app``; routers in ``api.routes``; figures from ``warehouse.reports``."""
