"""The local audit web app (issue 30): ``python -m miabench.serve``; reads attack folders, never trains."""
