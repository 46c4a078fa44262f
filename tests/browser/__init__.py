"""The real-browser tier: JupyterLab and Notebook 7 in headless chromium."""
