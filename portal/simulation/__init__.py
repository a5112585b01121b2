"""A simulated year: Continuum's real services, tasks and billing run driven through months of a generated customer
base under a clock the simulation moves, then every "right first time" invariant checked (`manage.py simulate_year`).

- `world.py` builds the catalog, tax rates, staff and the customer mix;
- `year.py` moves the clock and makes things happen through the services a customer, staff or the scheduler use;
- `invariants.py` checks the invariants on what the database holds afterwards (independently of the services);
- `report.py` writes the text and HTML report; `violations.py` is what a failed invariant reports;
- `cards.py`: card customers against localstripe (started through `localstripe_server.py`, which the tests'
  fixture runs too); `clerk.py`: the billing clerk's void and re-bill;
- `extensions.py` plugs the later features into `year.py`'s hooks: `einvoices.py`, `promotions.py`,
  `webhook_receiver.py` and `health_report.py`.
"""
