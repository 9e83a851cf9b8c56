# The LAN host image (lan1, lan2): the statically linked `probe` and nothing else.
# `probe host --gateway GW` sets the default route via the site's gateway and serves
# UDP echo on port 7001; `probe ping|wait|flow` are the checks (docker compose exec).
FROM scratch
COPY probe /
ENTRYPOINT ["/probe"]
CMD ["--help"]
