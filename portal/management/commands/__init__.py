"""`manage.py` commands of the portal: `seed_demo` (demo data), `simulate_year` (docs/simulation.md),
`policy_docs` (the policy table as docs) and `staff_otp_enrol` (a staff member's second factor)."""
