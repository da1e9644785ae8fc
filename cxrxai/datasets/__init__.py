"""One small loader per dataset format; each returns a list of :class:`~cxrxai.cases.Case`."""
