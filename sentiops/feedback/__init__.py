"""Labels for earlier predictions, and live accuracy per model version.

    labels      what a label is (random evaluation sample or targeted), parsing a request,
                where labels are stored and reading them back
    predictions the predictions labels are about (recent ones in memory, the prediction log)
    intake      taking labels: joined, checked whole (400 / 404 / 409), stored, counted
    live        live accuracy per model version from the random sample; the review of a
                burst of labels before retraining (the poisoning guard)

The package imports nothing itself: import the module you need (docs/architecture.md).
"""
