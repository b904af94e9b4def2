"""The breach register: every confirmed breach, notified or not, with its facts, effects,
remedial action, each jurisdiction's risk-of-harm assessment and decision, and how long each
regime requires the record to be kept; exported as JSON or CSV."""
