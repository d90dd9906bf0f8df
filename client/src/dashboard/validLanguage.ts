// uPlot calls `new Intl.NumberFormat(navigator.language)` when its module loads. Chromium started
// under LANG=C.UTF-8 (containers, CI) reports "en-US@posix", which is no BCP 47 tag: the constructor
// throws and the whole page would be blank. Imported before uPlot, this gives such a browser a tag
// Intl accepts (the part before "@", else en-US); a valid language is left alone.
function isValidTag(tag: string): boolean {
  try {
    new Intl.NumberFormat(tag);
    return true;
  } catch {
    return false;
  }
}

if (!isValidTag(navigator.language)) {
  const base = navigator.language.split("@")[0] ?? "";
  const usable = base && isValidTag(base) ? base : "en-US";
  Object.defineProperty(navigator, "language", { value: usable, configurable: true });
}
