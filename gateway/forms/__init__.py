"""The form catalogue and XSD validation: the only code that imports lxml and xmlschema."""
