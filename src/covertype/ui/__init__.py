"""The Streamlit front end (`covertype ui`): `app` is the page Streamlit runs (sign-in,
sidebar, tabs); one module per tab (`predict_tab`, `batch_tab`, `model_tab`,
`monitoring_tab`), the tab's data and charts (`monitoring_data`, `monitoring_charts`), the
inference API's client (`api_client`), the password gate (`login`), the sidebar's links
(`links`). Nothing is imported here: `streamlit run` loads `app` by its path.
"""
