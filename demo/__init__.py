"""The FuseMix Gradio demo (``demo/app.py``) and its lazy model loaders (``demo/models.py``)."""
