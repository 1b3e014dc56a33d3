"""Training with mask updates: the schedule, the gradient capture and the
one callback every method runs in."""
