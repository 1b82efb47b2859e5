"""OpenPGP and PGP/MIME: the only code that runs gpg; the acceptance rule (fail closed) is here."""
