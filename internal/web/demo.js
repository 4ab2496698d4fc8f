// The demo shop's own script: the chat box and the visitor's data buttons, all
// through window.visitord (the widget). Text goes into the page with textContent only.
(function () {
  'use strict';
  var $ = function (id) { return document.getElementById(id); };

  $('snippet').textContent = '<script async src="' + location.origin + '/v1/widget.js" data-site="demo"></script>';

  // widget waits for the async widget script.
  function widget() {
    return new Promise(function (resolve, reject) {
      var tries = 0;
      (function wait() {
        if (window.visitord) return resolve(window.visitord);
        if (++tries > 50) return reject(new Error('the widget script did not load'));
        setTimeout(wait, 100);
      })();
    });
  }

  widget().then(function (v) { return v.config(); }).then(function (c) {
    if (c.marketing_question) $('marketing-question').textContent = c.marketing_question;
  }).catch(function () {});

  $('chat-form').addEventListener('submit', function (ev) {
    ev.preventDefault();
    var f = ev.target;
    var status = $('chat-status');
    status.textContent = 'Starting the chat…';
    widget().then(function (v) {
      return v.startChat({
        contact: { name: f.elements.name.value, email: f.elements.email.value },
        marketingOptIn: f.elements.marketing.checked
      });
    }).then(function (r) {
      status.textContent = 'Chat ' + r.chat_id + ' started. An operator sees your pages in the console' +
        (r.returning ? ' (welcome back: ' + r.previous_chats + ' earlier chat(s)).' : '.');
      status.setAttribute('data-chat-id', r.chat_id);
      f.reset();
    }).catch(function (e) {
      status.textContent = 'The chat could not start: ' + e.message;
    });
  });

  function output(text) {
    var out = $('me-output');
    out.hidden = false;
    out.textContent = text;
  }

  $('export').addEventListener('click', function () {
    widget().then(function (v) { return v.exportMyData(); })
      .then(function (data) { output(JSON.stringify(data, null, 2)); })
      .catch(function (e) { output('Export failed: ' + e.message); });
  });

  $('forget').addEventListener('click', function () {
    widget().then(function (v) { return v.forgetMe(); })
      .then(function () { output('Everything recorded about you on this site has been erased.'); })
      .catch(function (e) { output('Erasure failed: ' + e.message); });
  });
})();
