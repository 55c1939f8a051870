'''FastAPI / Starlette integration for cloudrift.'''
