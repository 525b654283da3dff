"""The FastAPI application: routes, schemas, auth and live streams."""
