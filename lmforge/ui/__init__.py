"""``lmforge ui``: a local web page to look inside a model (tokens, next-token candidates, attention per layer and
head, the logit lens, streamed generation). :func:`lmforge.ui.app.create_app` builds the FastAPI app; the page's
HTML, JavaScript and CSS ship in ``static/`` — nothing is fetched from elsewhere."""
