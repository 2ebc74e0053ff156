# Benchmarks and load generators that play carriers and apps against a running gateway.
