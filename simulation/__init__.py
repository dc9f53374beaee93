"""The simulated world (never imported by product code): transactions, chargebacks, feed faults,
reviewers who answer in Label Studio, and the demo that drives the real loop with them."""
