"""``python evaluate.py`` runs ``python -m fusemix.evaluate`` (the evaluation lives in the library)."""
if __name__ == "__main__":
    __import__("runpy").run_module("fusemix.evaluate", run_name="__main__", alter_sys=True)
