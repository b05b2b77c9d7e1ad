// The viewer's sign-in page: email and password in, cookie session out, then back to
// the page that sent the user here (`?next=`, a path on this site only).
(function () {
  "use strict";

  const session = window.apertureSession;
  const $ = (id) => document.getElementById(id);

  // Only a local path: never another site (`//host`, `/\host`, `https:`).
  function nextPage() {
    const next = new URLSearchParams(window.location.search).get("next") || "";
    const local = next.startsWith("/") && !next.startsWith("//") && !next.includes("\\");
    return local ? next : `${session.api}/viewer`;
  }

  $("sign-in").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("error").textContent = "";
    $("submit").disabled = true;
    try {
      await session.signIn($("email").value, $("password").value);
      window.location.replace(nextPage());
    } catch (error) {
      $("error").textContent = error.message;
      $("submit").disabled = false;
    }
  });
})();
