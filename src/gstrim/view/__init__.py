"""The browser viewer's parts: the page and its files (`page`, `static/`), the web renderer it loads
(`engine`), the server that serves only those files (`server`), headless Chromium for screenshots
(`browser`) and the frame conventions between gstrim and the engine (`frame`). What to show is decided by
`gstrim.pipelines.view`."""
