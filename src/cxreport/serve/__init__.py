"""The HTTP service and web page (`cxreport serve`); needs the ``serve`` extra (FastAPI, uvicorn).

``create_app`` lives in ``cxreport.serve.app``; importing this package stays light."""
