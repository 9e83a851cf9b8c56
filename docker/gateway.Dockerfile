# The gateway image: node0, node1, the witness and the remote peer all run it.
#
# FROM scratch: nothing but the statically linked binaries that scripts/docker-build.sh
# builds here and puts in the build context (no registry, no base image, no shell; vpnd
# sets addresses and routes over rtnetlink itself). Configuration and certificates are
# mounted at run time (docker-compose.yml): /etc/vpnd/cluster.toml or peer.toml, and
# /etc/vpnd/pki from `vpnctl pki init`.
#
#   /vpnd    the daemon
#   /vpnctl  the CLI (docker compose exec node0 /vpnctl --pki /etc/vpnd/pki ...)
#   /probe   the entrypoint helper: `probe ifnames` renames the interfaces after their
#            subnets, then execs vpnd (see docker/cluster.toml)
FROM scratch
COPY vpnd vpnctl probe /
ENV NO_COLOR=1
ENTRYPOINT ["/vpnd"]
CMD ["--help"]
