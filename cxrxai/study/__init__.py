"""The clinician trust study: store, protocol, rating service and analysis."""
