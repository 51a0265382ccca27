"""The UI's password gate (COVERTYPE_UI_USER / COVERTYPE_UI_PASSWORD)."""

from __future__ import annotations

import hmac
import time

import streamlit as st

from covertype.settings import Settings


def signed_in(settings: Settings) -> bool:
    """The password gate (COVERTYPE_UI_USER / COVERTYPE_UI_PASSWORD): True once this
    browser session has signed in, else the form is drawn. A reload is a new session."""
    if not settings.auth.on or st.session_state.get("signed_in"):
        return True
    if settings.auth.ui_password is None:
        st.error(
            "COVERTYPE_UI_PASSWORD is not set: with COVERTYPE_AUTH=on this UI opens only with "
            "a password (12 characters or more)."
        )
        return False
    with st.form("sign-in"):
        st.subheader("Sign in")
        user = st.text_input("User", key="sign_in_user")
        password = st.text_input("Password", type="password", key="sign_in_password")
        submitted = st.form_submit_button("Sign in")
    if submitted:
        # Both compared in constant time, and both always: the timing tells nothing.
        good_user = hmac.compare_digest(user.encode(), settings.auth.ui_user.encode())
        secret = settings.auth.ui_password.get_secret_value().encode()
        if hmac.compare_digest(password.encode(), secret) & good_user:
            st.session_state["signed_in"] = True
            st.rerun()
        time.sleep(1)  # each wrong guess costs a second
        st.error("Wrong user name or password.")
    return False
