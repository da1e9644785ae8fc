"""cxrxai: judge whether a chest X-ray classifier's explanations point at the disease.

The library never imports Streamlit; the dashboard (``app.py``, ``pages/``) calls it.
"""

__version__ = "0.1.0"
