#!/bin/sh
# scripts/fetch_speech_pool.sh DEST [--with-noise]: real recorded speech (and noise) for a corpus; see docs/data_sources.md
# Downloads the recommended Debian 12 (bookworm) packages with apt-get download
# (no root needed once `apt-get update` has been run) and unpacks them with dpkg -x.
set -eu
DEST=${1:?usage: fetch_speech_pool.sh DEST [--with-noise]}
NOISE=${2:-}
mkdir -p "$DEST/debs"
DEST=$(cd "$DEST" && pwd)
SPEECH="tuxpaint-stamps-default=2022.06.04-1
fillets-ng-data-cs=1.0.1-1.1
fillets-ng-data-nl=1.0.1-1.1
asterisk-core-sounds-en-wav=1.6.1-1
asterisk-core-sounds-es-wav=1.6.1-1
asterisk-core-sounds-fr-wav=1.6.1-1
asterisk-core-sounds-it-wav=1.6.1-1
asterisk-core-sounds-ru-wav=1.6.1-1
asterisk-prompt-it-menardi-wav=1:1.4.22+mm20110907-3.1
klettres-data=4:22.12.3-1
ktuberling-data=4:22.12.3-1"
NOISEPKGS="megaglest-data=3.13.0-3
lincity-ng-data=2.9~git20150314-5
sonic-pi-samples=3.2.2~repack-8
asterisk-moh-opsound-wav=2.03-1.1"
PKGS=$SPEECH
[ "$NOISE" = "--with-noise" ] && PKGS="$SPEECH
$NOISEPKGS"
cd "$DEST/debs"
# shellcheck disable=SC2086
apt-get download $(echo "$PKGS" | tr '\n' ' ')
for f in "$DEST"/debs/*.deb; do
  name=$(dpkg-deb -f "$f" Package)
  mkdir -p "$DEST/$name"
  dpkg -x "$f" "$DEST/$name"
done
echo "unpacked into $DEST:"; ls "$DEST"
