"""Document verification service: live face against the document portrait, MRZ checks."""
