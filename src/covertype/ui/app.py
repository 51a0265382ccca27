"""The page `streamlit run` executes (`covertype ui`, port COVERTYPE_UI_PORT): sign-in,
the sidebar's links, the four tabs."""

from __future__ import annotations

import streamlit as st

from covertype.settings import Settings
from covertype.ui.batch_tab import batch_tab
from covertype.ui.links import links, locust_running
from covertype.ui.login import signed_in
from covertype.ui.model_tab import model_tab
from covertype.ui.monitoring_tab import monitoring_tab
from covertype.ui.predict_tab import predict_tab


def main() -> None:
    settings = Settings()
    st.set_page_config(page_title="covertype", page_icon="🌲", layout="wide")
    st.title("Forest cover type")
    if not signed_in(settings):
        st.stop()
    with st.sidebar:
        st.header("Services")
        for name, url in links(settings, locust_running(settings)).items():
            st.markdown(f"- [{name}]({url})")
        st.caption(f"Inference API: {settings.serve.url}")
        if settings.auth.on and st.button("Sign out"):
            st.session_state.clear()
            st.rerun()
    predict, batch, card, monitoring = st.tabs(
        ["Predict", "Batch (CSV)", "Model card", "Monitoring"]
    )
    with predict:
        predict_tab(settings)
    with batch:
        batch_tab(settings)
    with card:
        model_tab(settings)
    with monitoring:
        monitoring_tab(settings)


if __name__ == "__main__":  # how `streamlit run` executes the file
    main()
