"""The report: plain data first (model.py); renderers only draw it."""
